//! Tests of the network checks: rules read from EC2's JSON, admitted and refused subnets, zones.

use crate::checks::{
    NodeZone, SecurityGroup, Subnet, check_availability_zone, check_security_groups,
};

/// The blueprint's `<name>-fsx` group as `aws ec2 describe-security-groups` prints it.
const BLUEPRINT_GROUP: &str = r#"[{
    "GroupId": "sg-0123456789abcdef0",
    "GroupName": "trainium-inferentia-fsx",
    "IpPermissions": [
        {"IpProtocol": "tcp", "FromPort": 988, "ToPort": 988,
         "IpRanges": [{"CidrIp": "10.1.0.0/24"}, {"CidrIp": "10.1.1.0/24"}, {"CidrIp": "100.64.0.0/16"}],
         "Ipv6Ranges": [], "UserIdGroupPairs": []},
        {"IpProtocol": "tcp", "FromPort": 1021, "ToPort": 1023,
         "IpRanges": [{"CidrIp": "10.1.0.0/24"}, {"CidrIp": "10.1.1.0/24"}, {"CidrIp": "100.64.0.0/16"}],
         "Ipv6Ranges": [], "UserIdGroupPairs": []}
    ],
    "VpcId": "vpc-0123456789abcdef0"
}]"#;

fn groups(json: &str) -> Vec<SecurityGroup> {
    serde_json::from_str(json).unwrap()
}

fn subnet(id: &str, cidr: &str, zone: &str, zone_id: Option<&str>) -> Subnet {
    Subnet {
        subnet_id: id.to_owned(),
        cidr_block: cidr.to_owned(),
        availability_zone: zone.to_owned(),
        availability_zone_id: zone_id.map(str::to_owned),
    }
}

#[test]
fn the_blueprint_group_admits_the_node_subnets() {
    let nodes = [
        subnet("subnet-a", "10.1.0.0/24", "us-west-2d", Some("usw2-az4")),
        subnet("subnet-c", "100.64.0.0/17", "us-west-2d", Some("usw2-az4")),
    ];
    let outcome = check_security_groups(&groups(BLUEPRINT_GROUP), &nodes, &[]);
    assert!(outcome.passed, "{}", outcome.detail);
    assert!(
        outcome.detail.contains("subnet-a, subnet-c"),
        "{}",
        outcome.detail
    );
}

#[test]
fn a_closed_port_is_named_with_the_rule_to_add() {
    let only_988 = BLUEPRINT_GROUP.replace(
        r#""FromPort": 1021, "ToPort": 1023"#,
        r#""FromPort": 1021, "ToPort": 1022"#,
    );
    let nodes = [
        subnet("subnet-a", "10.1.0.0/24", "us-west-2d", None),
        subnet("subnet-x", "10.2.0.0/24", "us-west-2d", None),
    ];
    let outcome = check_security_groups(&groups(&only_988), &nodes, &[]);
    assert!(!outcome.passed);
    assert!(
        outcome
            .detail
            .contains("TCP 1023 from subnet-a (10.1.0.0/24)"),
        "{}",
        outcome.detail
    );
    assert!(
        outcome.detail.contains("TCP 988, 1021-1023 from subnet-x (10.2.0.0/24) is not admitted; add an inbound rule for TCP 988, 1021-1023 from 10.2.0.0/24"),
        "{}",
        outcome.detail
    );
    assert!(outcome.detail.contains("hangs"), "{}", outcome.detail);
}

#[test]
fn a_range_must_contain_the_whole_subnet() {
    // 10.1.0.0/25 covers only half of 10.1.0.0/24.
    let narrow = BLUEPRINT_GROUP.replace("10.1.0.0/24", "10.1.0.0/25");
    let nodes = [subnet("subnet-a", "10.1.0.0/24", "us-west-2d", None)];
    assert!(!check_security_groups(&groups(&narrow), &nodes, &[]).passed);
    // A wider range does.
    let wide = BLUEPRINT_GROUP.replace("10.1.0.0/24", "10.0.0.0/8");
    assert!(check_security_groups(&groups(&wide), &nodes, &[]).passed);
}

#[test]
fn all_traffic_rules_and_node_security_groups_count() {
    let all_traffic = r#"[{"GroupId": "sg-1", "IpPermissions": [
        {"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}]}]"#;
    let nodes = [subnet("subnet-a", "10.1.0.0/24", "us-west-2d", None)];
    assert!(check_security_groups(&groups(all_traffic), &nodes, &[]).passed);

    let from_group = r#"[{"GroupId": "sg-1", "IpPermissions": [
        {"IpProtocol": "tcp", "FromPort": 988, "ToPort": 988, "UserIdGroupPairs": [{"GroupId": "sg-nodes"}]},
        {"IpProtocol": "6", "FromPort": 1021, "ToPort": 1023, "UserIdGroupPairs": [{"GroupId": "sg-nodes"}]}]}]"#;
    assert!(check_security_groups(&groups(from_group), &nodes, &["sg-nodes".to_owned()]).passed);
    assert!(!check_security_groups(&groups(from_group), &nodes, &["sg-other".to_owned()]).passed);

    let udp = r#"[{"GroupId": "sg-1", "IpPermissions": [
        {"IpProtocol": "udp", "FromPort": 0, "ToPort": 65535, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}]}]"#;
    assert!(!check_security_groups(&groups(udp), &nodes, &[]).passed);
}

#[test]
fn no_groups_or_unreadable_cidrs_fail_with_a_reason() {
    let nodes = [subnet("subnet-a", "not-a-cidr", "us-west-2d", None)];
    let outcome = check_security_groups(&[], &nodes, &[]);
    assert!(!outcome.passed);
    assert!(
        outcome.detail.contains("no security group"),
        "{}",
        outcome.detail
    );
    assert!(outcome.detail.contains("cannot read"), "{}", outcome.detail);
}

#[test]
fn zones_are_compared_by_id_when_known() {
    let file_system_subnet = subnet("subnet-a", "10.1.0.0/24", "us-west-2d", Some("usw2-az4"));
    let node = |name: &str, zone: &str, id: Option<&str>| NodeZone {
        node: name.to_owned(),
        zone: zone.to_owned(),
        zone_id: id.map(str::to_owned),
    };
    let same = [
        node("ip-1", "us-west-2d", Some("usw2-az4")),
        node("ip-2", "us-west-2d", None),
    ];
    let outcome = check_availability_zone(&file_system_subnet, &same);
    assert!(outcome.passed, "{}", outcome.detail);
    assert!(
        outcome
            .detail
            .contains("all 2 Trainium nodes are in us-west-2d (usw2-az4)"),
        "{}",
        outcome.detail
    );

    // Same name, other physical zone (names differ between accounts): ids decide.
    let elsewhere = [node("ip-1", "us-west-2d", Some("usw2-az1"))];
    let outcome = check_availability_zone(&file_system_subnet, &elsewhere);
    assert!(!outcome.passed);
    assert!(
        outcome.detail.contains("ip-1") && outcome.detail.contains("usw2-az1"),
        "{}",
        outcome.detail
    );
    assert!(outcome.detail.contains("cross zones"), "{}", outcome.detail);

    let split = [
        node("ip-1", "us-west-2d", Some("usw2-az4")),
        node("ip-2", "us-west-2a", Some("usw2-az2")),
    ];
    let outcome = check_availability_zone(&file_system_subnet, &split);
    assert!(!outcome.passed);
    assert!(
        outcome.detail.contains("1 of 2") && outcome.detail.contains("EFA"),
        "{}",
        outcome.detail
    );

    assert!(!check_availability_zone(&file_system_subnet, &[]).passed);
}

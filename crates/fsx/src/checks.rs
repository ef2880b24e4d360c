//! Network checks that explain themselves: can the Trainium nodes reach the file system?
//!
//! Two things go wrong in practice:
//!
//! - **Security group.** Lustre clients talk to the file servers on TCP 988 and 1021–1023. The
//!   blueprint's `<name>-fsx` group admits those ports from every private subnet of the VPC;
//!   without them the CSI node plugin's `mount -t lustre` hangs and pods stay
//!   `ContainerCreating` with a bare timeout. [`check_security_groups`] says which port is closed
//!   to which subnet and what rule to add.
//! - **Availability Zone.** The file system lives in one subnet, so in one zone. The blueprint
//!   puts it in the zone of the Trainium nodes (private subnet 0); elsewhere, every read of the
//!   dataset and every checkpoint crosses zones (slower, and billed per GB).
//!   [`check_availability_zone`] compares the subnet's zone with the nodes'.
//!
//! Both are pure functions over facts the caller fetches; this crate has no EC2 client. The
//! fact types deserialize from the EC2 API's JSON as the AWS CLI prints it, so a caller can use
//! `aws ec2 describe-security-groups --group-ids sg-… --query SecurityGroups --output json`
//! and `aws ec2 describe-subnets --subnet-ids subnet-… --query Subnets --output json`, or map
//! `aws-sdk-ec2` types field by field. The nodes' zones come from the node labels
//! `topology.kubernetes.io/zone` and `topology.k8s.aws/zone-id`.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// The TCP ports Lustre clients use: 988, and 1021 to 1023.
pub const LUSTRE_PORTS: [u16; 4] = [988, 1021, 1022, 1023];

/// One security group with its inbound rules (EC2 `SecurityGroup`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SecurityGroup {
    /// `GroupId`, e.g. `sg-0123456789abcdef0`.
    pub group_id: String,
    /// `IpPermissions`: the inbound rules.
    #[serde(default)]
    pub ip_permissions: Vec<IpPermission>,
}

/// One inbound rule (EC2 `IpPermission`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct IpPermission {
    /// `IpProtocol`: `tcp`, `6`, or `-1` for every protocol.
    pub ip_protocol: String,
    /// `FromPort`; absent (or -1) when the rule covers every port.
    #[serde(default)]
    pub from_port: Option<i32>,
    /// `ToPort`.
    #[serde(default)]
    pub to_port: Option<i32>,
    /// `IpRanges`: IPv4 sources.
    #[serde(default)]
    pub ip_ranges: Vec<IpRange>,
    /// `Ipv6Ranges`: IPv6 sources.
    #[serde(default)]
    pub ipv6_ranges: Vec<Ipv6Range>,
    /// `UserIdGroupPairs`: security groups as sources.
    #[serde(default)]
    pub user_id_group_pairs: Vec<GroupPair>,
}

/// An IPv4 source range.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct IpRange {
    /// `CidrIp`, e.g. `10.1.0.0/24`.
    pub cidr_ip: String,
}

/// An IPv6 source range.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Ipv6Range {
    /// `CidrIpv6`.
    pub cidr_ipv6: String,
}

/// A security group as a source.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GroupPair {
    /// `GroupId`.
    pub group_id: String,
}

/// A subnet (EC2 `Subnet`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Subnet {
    /// `SubnetId`.
    pub subnet_id: String,
    /// `CidrBlock`, e.g. `10.1.0.0/24`.
    pub cidr_block: String,
    /// `AvailabilityZone`, e.g. `us-west-2d`. Zone names map to different physical zones in
    /// different accounts; prefer ids.
    pub availability_zone: String,
    /// `AvailabilityZoneId`, e.g. `usw2-az4`: the same physical zone in every account.
    #[serde(default)]
    pub availability_zone_id: Option<String>,
}

/// Where a Trainium node runs (from its `topology.kubernetes.io/zone` and
/// `topology.k8s.aws/zone-id` labels).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeZone {
    /// The node's name.
    pub node: String,
    /// The zone name, e.g. `us-west-2d`.
    pub zone: String,
    /// The zone id, e.g. `usw2-az4`, when the node has the label.
    pub zone_id: Option<String>,
}

/// The result of one check, with a sentence a user can act on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckOutcome {
    /// The check's name, e.g. `security-group`.
    pub check: String,
    /// Whether it passed.
    pub passed: bool,
    /// What was found and, on failure, what to do.
    pub detail: String,
}

/// Checks that `groups` (the file system's security groups) admit TCP 988 and 1021–1023 from
/// every subnet in `client_subnets` (the nodes' subnets; include the file system's own subnet,
/// since the file servers talk to each other on the same ports).
///
/// A rule admits a subnet when its protocol is `tcp`, `6` or `-1`, its ports cover the port, and
/// one of its CIDR ranges contains the subnet's whole CIDR block, or one of its source groups is
/// in `client_security_group_ids` (the nodes' security groups).
pub fn check_security_groups(
    groups: &[SecurityGroup],
    client_subnets: &[Subnet],
    client_security_group_ids: &[String],
) -> CheckOutcome {
    let group_ids: Vec<&str> = groups.iter().map(|group| group.group_id.as_str()).collect();
    let mut problems = Vec::new();
    let mut seen = Vec::new();
    for subnet in client_subnets {
        if seen.contains(&&subnet.subnet_id) {
            continue;
        }
        seen.push(&subnet.subnet_id);
        let Some(subnet_cidr) = Cidr::parse(&subnet.cidr_block) else {
            problems.push(format!(
                "subnet {} has a CIDR block trnkit cannot read ({:?})",
                subnet.subnet_id, subnet.cidr_block
            ));
            continue;
        };
        let closed: Vec<u16> = LUSTRE_PORTS
            .into_iter()
            .filter(|&port| {
                !groups
                    .iter()
                    .flat_map(|group| &group.ip_permissions)
                    .any(|rule| rule_admits(rule, port, &subnet_cidr, client_security_group_ids))
            })
            .collect();
        if !closed.is_empty() {
            problems.push(format!(
                "TCP {} from {} ({}) is not admitted; add an inbound rule for TCP {} from {}",
                port_list(&closed),
                subnet.subnet_id,
                subnet.cidr_block,
                port_list(&closed),
                subnet.cidr_block
            ));
        }
    }
    let groups_label = if group_ids.is_empty() {
        "no security groups".to_owned()
    } else {
        group_ids.join(", ")
    };
    if group_ids.is_empty() {
        problems.insert(
            0,
            "the file system has no security group to check".to_owned(),
        );
    }
    if problems.is_empty() {
        CheckOutcome {
            check: "security-group".to_owned(),
            passed: true,
            detail: format!(
                "{groups_label} admit TCP 988 and 1021-1023 from {}",
                seen.iter()
                    .map(|id| id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    } else {
        CheckOutcome {
            check: "security-group".to_owned(),
            passed: false,
            detail: format!(
                "{groups_label}: {}. Without these, the Lustre mount in every pod hangs until it times out",
                problems.join("; ")
            ),
        }
    }
}

/// Checks that the file system's subnet lies in the Availability Zone of every Trainium node.
///
/// Zone ids are compared when both sides have them (names differ between accounts), otherwise
/// zone names.
pub fn check_availability_zone(file_system_subnet: &Subnet, nodes: &[NodeZone]) -> CheckOutcome {
    let subnet_zone = zone_label(
        &file_system_subnet.availability_zone,
        file_system_subnet.availability_zone_id.as_deref(),
    );
    if nodes.is_empty() {
        return CheckOutcome {
            check: "availability-zone".to_owned(),
            passed: false,
            detail: format!(
                "no Trainium nodes to compare with subnet {} in {subnet_zone}; check again once the nodes are up",
                file_system_subnet.subnet_id
            ),
        };
    }
    let same_zone =
        |node: &NodeZone| match (&file_system_subnet.availability_zone_id, &node.zone_id) {
            (Some(subnet_id), Some(node_id)) => subnet_id == node_id,
            _ => file_system_subnet.availability_zone == node.zone,
        };
    let elsewhere: Vec<&NodeZone> = nodes.iter().filter(|node| !same_zone(node)).collect();
    if elsewhere.is_empty() {
        return CheckOutcome {
            check: "availability-zone".to_owned(),
            passed: true,
            detail: format!(
                "subnet {} and all {} Trainium nodes are in {subnet_zone}",
                file_system_subnet.subnet_id,
                nodes.len()
            ),
        };
    }
    let mut zones: Vec<String> = elsewhere
        .iter()
        .map(|node| zone_label(&node.zone, node.zone_id.as_deref()))
        .collect();
    zones.sort();
    zones.dedup();
    let split = if elsewhere.len() < nodes.len() {
        " The nodes themselves span several zones, which EFA collectives do not support: put them in one subnet."
    } else {
        ""
    };
    CheckOutcome {
        check: "availability-zone".to_owned(),
        passed: false,
        detail: format!(
            "subnet {} is in {subnet_zone} but {} of {} Trainium nodes ({}) are in {}: every dataset read and \
             checkpoint would cross zones, which is slower and billed per GB. Create the file system in a \
             subnet of the nodes' zone (the blueprint uses private subnet 0).{split}",
            file_system_subnet.subnet_id,
            elsewhere.len(),
            nodes.len(),
            elsewhere
                .iter()
                .map(|node| node.node.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            zones.join(", "),
        ),
    }
}

fn zone_label(name: &str, id: Option<&str>) -> String {
    match id {
        Some(id) => format!("{name} ({id})"),
        None => name.to_owned(),
    }
}

fn rule_admits(rule: &IpPermission, port: u16, subnet: &Cidr, client_groups: &[String]) -> bool {
    let protocol_ok = matches!(
        rule.ip_protocol.to_ascii_lowercase().as_str(),
        "tcp" | "6" | "-1" | "all"
    );
    let all_ports = rule.ip_protocol == "-1"
        || matches!((rule.from_port, rule.to_port), (None, None) | (Some(-1), _));
    let port_ok = all_ports
        || match (rule.from_port, rule.to_port) {
            (Some(from), Some(to)) => from <= i32::from(port) && i32::from(port) <= to,
            _ => false,
        };
    if !(protocol_ok && port_ok) {
        return false;
    }
    let cidr_ok = rule
        .ip_ranges
        .iter()
        .map(|range| range.cidr_ip.as_str())
        .chain(
            rule.ipv6_ranges
                .iter()
                .map(|range| range.cidr_ipv6.as_str()),
        )
        .filter_map(Cidr::parse)
        .any(|range| range.contains(subnet));
    let group_ok = rule
        .user_id_group_pairs
        .iter()
        .any(|pair| client_groups.contains(&pair.group_id));
    cidr_ok || group_ok
}

fn port_list(ports: &[u16]) -> String {
    // Ports come in ascending order; collapse runs, e.g. [988, 1021, 1022, 1023] -> "988, 1021-1023".
    let mut parts: Vec<String> = Vec::new();
    let mut index = 0;
    while index < ports.len() {
        let start = ports[index];
        let mut end = start;
        while index + 1 < ports.len() && ports[index + 1] == end + 1 {
            index += 1;
            end = ports[index];
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        index += 1;
    }
    parts.join(", ")
}

/// An IPv4 or IPv6 CIDR block, as a 128-bit number and a prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Cidr {
    v6: bool,
    address: u128,
    prefix: u8,
}

impl Cidr {
    fn parse(text: &str) -> Option<Self> {
        let (address, prefix) = text.trim().split_once('/')?;
        let prefix: u8 = prefix.parse().ok()?;
        match address.parse::<IpAddr>().ok()? {
            IpAddr::V4(v4) if prefix <= 32 => Some(Self {
                v6: false,
                address: u128::from(u32::from(v4)) << 96,
                prefix,
            }),
            IpAddr::V6(v6) if prefix <= 128 => Some(Self {
                v6: true,
                address: u128::from(v6),
                prefix,
            }),
            _ => None,
        }
    }

    fn mask(prefix: u8) -> u128 {
        if prefix == 0 {
            0
        } else {
            u128::MAX << (128 - u32::from(prefix))
        }
    }

    /// Whether every address of `other` lies in `self`.
    fn contains(&self, other: &Cidr) -> bool {
        self.v6 == other.v6
            && self.prefix <= other.prefix
            && (self.address & Self::mask(self.prefix)) == (other.address & Self::mask(self.prefix))
    }
}

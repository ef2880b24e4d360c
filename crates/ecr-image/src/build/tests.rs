//! Unit tests for parsing the classic builder's output.

use super::*;

#[test]
fn parses_step_lines() {
    assert_eq!(
        parse_step("Step 2/5 : RUN make all"),
        Some((2, 5, "RUN make all".to_owned()))
    );
    assert_eq!(
        parse_step("Step 10/12 : COPY a b"),
        Some((10, 12, "COPY a b".to_owned()))
    );
    assert_eq!(parse_step(" ---> Running in 1234"), None);
    assert_eq!(parse_step("Step x/5 : RUN"), None);
    assert_eq!(parse_step("Successfully built abc"), None);
}

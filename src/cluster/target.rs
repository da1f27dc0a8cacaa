//! The Service a command names on its command line, as kubectl names it.

/// The Service reference on a command line is not `svc/NAME`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0:?} is not a Service reference; use svc/NAME")]
pub struct TargetError(pub String);

/// `svc/NAME`, `service/NAME`, `services/NAME` (the kind in any case) → NAME.
pub fn parse_target(target: &str) -> Result<&str, TargetError> {
    let refused = || TargetError(target.to_string());
    let (kind, name) = target.split_once('/').ok_or_else(refused)?;
    let kind = kind.to_ascii_lowercase();
    if !matches!(kind.as_str(), "svc" | "service" | "services") || !valid_name(name) {
        return Err(refused());
    }
    Ok(name)
}

/// DNS-1123 label or subdomain, as object names are.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        assert_eq!(parse_target("svc/web").unwrap(), "web");
        assert_eq!(parse_target("services/web-1").unwrap(), "web-1");
        assert_eq!(parse_target("Service/web").unwrap(), "web");
        assert!(parse_target("deploy/web").is_err());
        assert!(parse_target("web").is_err());
        assert!(parse_target("svc/Web").is_err());
        assert!(parse_target("svc/").is_err());
        assert!(parse_target("svc/a/b").is_err());
        assert_eq!(
            parse_target("web").unwrap_err().to_string(),
            "\"web\" is not a Service reference; use svc/NAME"
        );
    }
}

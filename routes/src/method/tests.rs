use super::*;

fn only(methods: &[&str]) -> MethodSet {
    MethodSet::Only(methods.iter().map(|m| (*m).to_owned()).collect())
}

#[test]
fn empty_list_is_any() {
    let none: [&str; 0] = [];
    assert_eq!(MethodSet::parse(&none).unwrap(), MethodSet::Any);
    assert!(MethodSet::Any.allows("ANYTHING"));
}

#[test]
fn stores_uppercase_without_duplicates() {
    assert_eq!(
        MethodSet::parse(&["get", "Post", "GET", "PURGE"]).unwrap(),
        only(&["GET", "POST", "PURGE"])
    );
    let owned = vec!["delete".to_owned()];
    assert_eq!(MethodSet::parse(&owned).unwrap(), only(&["DELETE"]));
}

#[test]
fn rejects_non_tokens_naming_them() {
    assert_eq!(
        MethodSet::parse(&["GET", "GE T"]).unwrap_err().to_string(),
        "invalid HTTP method 'GE T': not an HTTP method token (RFC 9110 section 5.6.2)"
    );
    assert_eq!(
        MethodSet::parse(&[""]).unwrap_err().to_string(),
        "invalid HTTP method '': empty method"
    );
    for bad in ["GET/", "(GET)", "GÉT", "G\"ET", "GET\n"] {
        assert!(MethodSet::parse(&[bad]).is_err(), "{bad:?}");
    }
    assert!(MethodSet::parse(&["M-SEARCH", "X_CUSTOM.1"]).is_ok());
}

#[test]
fn allows_is_case_sensitive() {
    let set = only(&["GET", "POST"]);
    assert!(set.allows("GET"));
    assert!(set.allows("POST"));
    assert!(!set.allows("get"));
    assert!(!set.allows("PUT"));
    assert!(!set.allows(""));
}

#[test]
fn overlap_describes_shared_methods() {
    assert_eq!(
        MethodSet::Any.overlap(&MethodSet::Any).as_deref(),
        Some("any method")
    );
    assert_eq!(MethodSet::Any.overlap(&only(&["GET"])), None);
    assert_eq!(only(&["GET"]).overlap(&MethodSet::Any), None);
    assert_eq!(only(&["GET"]).overlap(&only(&["POST"])), None);
    assert_eq!(
        only(&["GET", "POST", "PUT"])
            .overlap(&only(&["PUT", "POST"]))
            .as_deref(),
        Some("method POST, PUT")
    );
}

#[test]
fn check_rejects_what_parse_would_not_produce() {
    assert!(only(&["GET"]).check().is_ok());
    assert_eq!(
        only(&["get"]).check().unwrap_err().to_string(),
        "invalid HTTP method 'get': must be uppercase"
    );
    assert!(only(&[]).check().is_err());
    assert!(only(&["G T"]).check().is_err());
}

#[test]
fn display() {
    assert_eq!(MethodSet::Any.to_string(), "*");
    assert_eq!(only(&["GET", "HEAD"]).to_string(), "GET, HEAD");
}

use http::HeaderValue;

use super::token;

#[test]
fn the_token_is_the_value_without_its_bearer_scheme() {
    let v = |s: &str| HeaderValue::from_str(s).unwrap();
    assert_eq!(token(Some(&v("Bearer abc.def.ghi"))), Some("abc.def.ghi"));
    assert_eq!(token(Some(&v("bearer   abc"))), Some("abc"));
    assert_eq!(token(Some(&v("abc.def.ghi"))), Some("abc.def.ghi"));
    assert_eq!(token(Some(&v("token gho_123"))), Some("token gho_123"));
    assert_eq!(token(Some(&v("Bearer "))), None);
    assert_eq!(token(Some(&v(""))), None);
    assert_eq!(token(None), None);
}

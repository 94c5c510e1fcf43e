//! Bearer tokens.
//!
//! Writes (`POST`) need the write token; without one configured every write
//! is refused (403), so a node never accepts anonymous writes. Reads need the
//! read token when one is configured (the write token is accepted for reads
//! too). Tokens come from the environment or a file (`node.http.*_env`,
//! `*_file`), never from the topology. Comparison is constant-time in the
//! token's content; a missing or wrong token is 401 and counted
//! (`twinstream_http_auth_failures_total`).

use actix_web::HttpRequest;
use subtle::ConstantTimeEq;

use super::ApiError;
use crate::telemetry;

/// The tokens a node checks.
#[derive(Clone, Default)]
pub struct Tokens {
    pub write: Option<String>,
    pub read: Option<String>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("write", &self.write.as_ref().map(|_| "***"))
            .field("read", &self.read.as_ref().map(|_| "***"))
            .finish()
    }
}

/// What a request wants to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

fn matches(given: &str, expected: &str) -> bool {
    // `ct_eq` on slices of different lengths is false at once: the length
    // is all a timing attacker can learn.
    bool::from(given.as_bytes().ct_eq(expected.as_bytes()))
}

/// The token of an `Authorization: Bearer <token>` header.
fn bearer(req: &HttpRequest) -> Option<&str> {
    let value = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

impl Tokens {
    /// Checks `req` for `access`; `route` labels the failure counter.
    pub fn check(&self, req: &HttpRequest, access: Access, route: &str) -> Result<(), ApiError> {
        let accepted: Vec<&str> =
            match access {
                Access::Write => match &self.write {
                    Some(w) => vec![w.as_str()],
                    None => return Err(ApiError::Forbidden(
                        "writes are disabled on this node: configure `node.http.write_token_env` or `write_token_file`"
                            .into(),
                    )),
                },
                Access::Read => match &self.read {
                    None => return Ok(()),
                    Some(r) => [Some(r.as_str()), self.write.as_deref()]
                        .into_iter()
                        .flatten()
                        .collect(),
                },
            };
        let refused = |why: &str| {
            telemetry::http_auth_failed(route);
            Err(ApiError::Unauthorized(why.into()))
        };
        let Some(given) = bearer(req) else {
            return refused("this request needs `Authorization: Bearer <token>`");
        };
        // Check every accepted token, so the time does not say which matched.
        let ok = accepted.iter().fold(false, |ok, t| matches(given, t) | ok);
        if ok {
            Ok(())
        } else {
            refused("the bearer token is not valid for this request")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    fn tokens() -> Tokens {
        Tokens {
            write: Some("w-secret".into()),
            read: Some("r-secret".into()),
        }
    }

    #[test]
    fn writes_need_the_write_token() {
        let t = tokens();
        let ok = TestRequest::default()
            .insert_header(("Authorization", "Bearer w-secret"))
            .to_http_request();
        assert_eq!(t.check(&ok, Access::Write, "/x"), Ok(()));
        let read = TestRequest::default()
            .insert_header(("Authorization", "Bearer r-secret"))
            .to_http_request();
        assert!(matches!(
            t.check(&read, Access::Write, "/x"),
            Err(ApiError::Unauthorized(_))
        ));
        let none = TestRequest::default().to_http_request();
        assert!(matches!(
            t.check(&none, Access::Write, "/x"),
            Err(ApiError::Unauthorized(_))
        ));
        let basic = TestRequest::default()
            .insert_header(("Authorization", "Basic w-secret"))
            .to_http_request();
        assert!(matches!(
            t.check(&basic, Access::Write, "/x"),
            Err(ApiError::Unauthorized(_))
        ));
    }

    #[test]
    fn reads_take_either_token_when_protected_and_none_when_not() {
        let t = tokens();
        for token in ["r-secret", "w-secret"] {
            let req = TestRequest::default()
                .insert_header(("Authorization", format!("bearer {token}")))
                .to_http_request();
            assert_eq!(t.check(&req, Access::Read, "/x"), Ok(()), "{token}");
        }
        let wrong = TestRequest::default()
            .insert_header(("Authorization", "Bearer r-secreT"))
            .to_http_request();
        assert!(matches!(
            t.check(&wrong, Access::Read, "/x"),
            Err(ApiError::Unauthorized(_))
        ));
        let open = Tokens {
            write: Some("w".into()),
            read: None,
        };
        assert_eq!(
            open.check(&TestRequest::default().to_http_request(), Access::Read, "/x"),
            Ok(())
        );
    }

    #[test]
    fn without_a_write_token_writes_are_forbidden() {
        let t = Tokens::default();
        let req = TestRequest::default()
            .insert_header(("Authorization", "Bearer anything"))
            .to_http_request();
        assert!(matches!(
            t.check(&req, Access::Write, "/x"),
            Err(ApiError::Forbidden(_))
        ));
    }

    #[test]
    fn debug_output_hides_the_tokens() {
        let shown = format!("{:?}", tokens());
        assert!(!shown.contains("secret"), "{shown}");
    }
}

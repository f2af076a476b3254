//! The URLs a thread's transport converted last, kept parsed.
//!
//! reqwest sends to a `url::Url`, and its conversion from an `http::Uri` formats the URI
//! and parses the text back, host through IDNA: about 8,000 instructions, a tenth of a
//! whole loopback call's. A client sends to the same two or three URLs all its life, so
//! each thread keeps its last few conversions and hands out a clone instead: one small
//! allocation. A parse is a pure function of the text, so the clone is what a new parse
//! would give. What a thread remembers (user info in a URL included) stays until four
//! other URLs replace it or the thread ends.

use std::cell::RefCell;

use http::Uri;
use reqwest::Url;

/// Conversions kept per thread: a client's endpoints, and a few to spare.
const SLOTS: usize = 4;

struct Recent {
    slots: [Option<(Uri, Url)>; SLOTS],
    /// The slot the next new URL replaces.
    next: usize,
}

thread_local! {
    static RECENT: RefCell<Recent> = const {
        RefCell::new(Recent { slots: [const { None }; SLOTS], next: 0 })
    };
}

/// `uri` as a `Url`, as `Url::parse(&uri.to_string())` gives it; `None` if it does not
/// parse (the caller lets reqwest report that, in its own words) or if the thread is
/// being torn down (the caller converts the request reqwest's way).
pub(crate) fn url_of(uri: &Uri) -> Option<Url> {
    RECENT
        .try_with(|recent| remembered(recent, uri))
        .ok()
        .flatten()
}

/// The parse of `uri` from `recent`, or a new one remembered there.
fn remembered(recent: &RefCell<Recent>, uri: &Uri) -> Option<Url> {
    let mut recent = recent.borrow_mut();
    if let Some((_, url)) = recent.slots.iter().flatten().find(|(u, _)| same(u, uri)) {
        return Some(url.clone());
    }
    let url = Url::parse(&uri.to_string()).ok()?;
    let slot = recent.next;
    recent.slots[slot] = Some((uri.clone(), url.clone()));
    recent.next = (slot + 1) % SLOTS;
    Some(url)
}

/// Whether `a` and `b` are the same text. `Uri`'s own `==` ignores the case of the
/// authority, user info included, which a parse keeps.
fn same(a: &Uri, b: &Uri) -> bool {
    a.scheme_str() == b.scheme_str()
        && a.authority().map(|a| a.as_str()) == b.authority().map(|b| b.as_str())
        && a.path_and_query().map(|p| p.as_str()) == b.path_and_query().map(|p| p.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(uri: &str) -> Option<Url> {
        url_of(&uri.parse().expect("a URI"))
    }

    #[test]
    fn gives_what_a_parse_gives_first_time_and_after() {
        for uri in [
            "https://foundation-models.api.cloud.ru/v1/chat/completions",
            "http://127.0.0.1:8080/v1/models?limit=2",
            "http://[::1]:9/x",
            "https://XN--BCHER-KVA.Example/a%20b",
        ] {
            let expected = Url::parse(&uri.parse::<Uri>().expect("a URI").to_string()).ok();
            assert_eq!(parsed(uri), expected, "{uri}, first");
            assert_eq!(parsed(uri), expected, "{uri}, remembered");
        }
    }

    #[test]
    fn user_info_differing_in_case_is_not_the_same_url() {
        let lower = parsed("http://user:pass@host/").expect("a URL");
        let upper = parsed("http://USER:PASS@host/").expect("a URL");
        assert_eq!((lower.username(), lower.password()), ("user", Some("pass")));
        assert_eq!((upper.username(), upper.password()), ("USER", Some("PASS")));
    }

    #[test]
    fn more_urls_than_slots_each_stay_right() {
        let uris: Vec<String> = (0..3 * SLOTS)
            .map(|i| format!("http://127.0.0.1:{}/v1/chat/completions", 8000 + i))
            .collect();
        for _ in 0..2 {
            for uri in &uris {
                assert_eq!(parsed(uri).expect("a URL").as_str(), uri);
            }
        }
    }

    #[test]
    fn a_uri_without_a_scheme_is_left_to_reqwest() {
        assert_eq!(parsed("/v1/models"), None);
        assert_eq!(parsed("/v1/models"), None);
    }
}

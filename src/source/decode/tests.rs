//! The record scanner against `serde_json`: on every record the scanner
//! reads, both read the same fields; on every record it declines, the
//! `serde_json` path decides (and words the error of a malformed one).

use proptest::prelude::*;

use super::agree::{by_scan, by_serde, scanner_agrees, show, tree};

/// Numbers as sources write them, and the edges of JSON's number grammar.
fn number() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|v| v.to_string()),
        any::<u64>().prop_map(|v| v.to_string()),
        any::<f64>().prop_map(|v| v.to_string()),
        any::<f64>().prop_map(|v| format!("{v:e}")),
        (0u64..1_000_000, 0u32..1_000_000).prop_map(|(a, b)| format!("{a}.{b}")),
        // Around the scanner's exact fast path: up to 2^53 in digits, up
        // to 22 of them after the point, and just past either.
        ((1u64 << 53) - 1000..(1u64 << 53) + 1000, 1usize..=23, any::<bool>()).prop_map(|(m, n, neg)| {
            let digits = format!("{m:0>24}");
            let (int, frac) = digits.split_at(digits.len() - n);
            format!(
                "{}{}.{frac}",
                if neg { "-" } else { "" },
                int.trim_start_matches('0').max("0")
            )
        }),
        (0u64..100_000_000, 0usize..=22).prop_map(|(m, n)| {
            let digits = format!("{m:0>23}");
            let (int, frac) = digits.split_at(digits.len() - n.max(1));
            format!("{}.{frac}", int.trim_start_matches('0').max("0"))
        }),
        (any::<i32>(), -400i32..400).prop_map(|(m, e)| format!("{m}E{e:+}")),
        Just("-0".to_string()),
        Just("-0.0".to_string()),
        Just("18446744073709551616".to_string()),
        Just("-9223372036854775809".to_string()),
        Just("1e400".to_string()),
        Just("01".to_string()),
        Just("1.".to_string()),
        Just("-".to_string()),
        Just(".5".to_string()),
        Just("1e".to_string()),
    ]
}

/// Strings, with and without what the scanner leaves to `serde_json`.
fn string() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9_-]{0,12}".prop_map(|s| format!("\"{s}\"")),
        "[a-zé€😀 ]{0,6}".prop_map(|s| format!("\"{s}\"")),
        Just(r#""a\"b""#.to_string()),
        Just(r#""pump\u002d7""#.to_string()),
        Just("\"tab\there\"".to_string()),
        Just("\"unterminated".to_string()),
    ]
}

fn value() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        3 => number(),
        3 => string(),
        1 => prop_oneof![Just("true"), Just("false"), Just("null"), Just("nul")].prop_map(str::to_string),
    ];
    leaf.prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(|v| format!("[{}]", v.join(","))),
            prop::collection::vec((key(), inner), 0..4).prop_map(|kv| object(&kv)),
        ]
    })
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        prop_oneof![
            Just("asset"),
            Just("ts"),
            Just("sensor"),
            Just("value"),
            Just("meta"),
            Just("contract"),
            Just("payload"),
            Just("temp"),
            Just("deep"),
            Just("rpm"),
            Just("other"),
        ]
        .prop_map(|k| format!("\"{k}\"")),
        Just(r#""as\u0073et""#.to_string()),
    ]
}

fn object(kv: &[(String, String)]) -> String {
    let fields: Vec<String> = kv.iter().map(|(k, v)| format!("{k}:{v}")).collect();
    format!("{{{}}}", fields.join(","))
}

/// A record of mapped and unmapped fields, with whitespace here and there.
fn record() -> impl Strategy<Value = String> {
    (
        prop::collection::vec((key(), value()), 0..7),
        prop_oneof![Just(""), Just(" "), Just("\t\r\n ")],
    )
        .prop_map(|(kv, ws)| {
            let fields: Vec<String> = kv.iter().map(|(k, v)| format!("{ws}{k}{ws}:{ws}{v}{ws}")).collect();
            format!("{ws}{{{}}}{ws}", fields.join(","))
        })
}

/// A plain record as sources send it: the scanner must read it itself.
fn plain() -> impl Strategy<Value = String> {
    ("[a-z0-9-]{1,12}", "[a-z_]{1,10}", any::<i64>(), any::<f64>().prop_filter("finite", |v| v.is_finite()))
        .prop_map(|(asset, sensor, ts, v)| {
            format!(r#"{{"asset":"{asset}","sensor":"{sensor}","ts":{ts},"value":{v},"payload":{{"temp":{v:e}}},"note":[1,{{"x":null}}]}}"#)
        })
}

fn agree(text: &str) -> Result<bool, TestCaseError> {
    scanner_agrees(text).map_err(TestCaseError::fail)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    #[test]
    fn the_scanner_reads_what_serde_json_reads(text in record()) {
        agree(&text)?;
    }

    #[test]
    fn a_damaged_record_is_read_the_same_or_left_to_serde_json(
        text in record(),
        at in any::<prop::sample::Index>(),
        byte in prop_oneof![Just(b'"'), Just(b','), Just(b'}'), Just(b'{'), Just(b':'), Just(b'-'), Just(b'.'), Just(b'e'), Just(b'0')],
        delete in any::<bool>(),
    ) {
        let mut bytes = text.into_bytes();
        let i = at.index(bytes.len() + 1);
        if delete && i < bytes.len() {
            bytes.remove(i);
        } else {
            bytes.insert(i, byte);
        }
        if let Ok(text) = String::from_utf8(bytes) {
            agree(&text)?;
        }
    }

    #[test]
    fn plain_records_take_the_fast_path(text in plain()) {
        prop_assert!(agree(&text)?, "the scanner declined a plain record: {}", text);
    }
}

#[test]
fn numbers_follow_serde_json_at_the_edges() {
    let tree = tree();
    for v in [
        "-0",
        "-0.0",
        "0",
        "-9223372036854775808",
        "9223372036854775807",
        "1e-400",
        "2.2250738585072014e-308",
        "0.1",
        "123456789012345678901234567890e-10",
        "18446744073709551616",
        "-9223372036854775809",
        "123456789012345678901234567890",
    ] {
        let text = format!(r#"{{"ts":{v},"value":{v}}}"#);
        let fast = by_scan(&text, &tree);
        let slow = by_serde(&text, &tree).expect("valid");
        assert_eq!(fast.as_ref().map(show), Some(show(&slow)), "{text}");
    }
    // A timestamp beyond `i64` and floats beyond `f64`: serde_json decides.
    for v in ["9223372036854775808", "1e400", "-1e400"] {
        let text = format!(r#"{{"ts":{v}}}"#);
        assert!(by_scan(&text, &tree).is_none(), "{text}");
    }
}

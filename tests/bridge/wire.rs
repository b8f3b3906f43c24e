//! Property tests of the wire layer: the `Last-Event-ID` parser never panics and accepts
//! exactly its grammar; whatever the frame writer accepts re-parses (with an independent
//! parser) as exactly one event with the intended fields.

use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use proptest::prelude::*;
use taskflow::Seq;
use taskflow::sse::{parse_last_event_id, write_comment, write_event};

fn reparse(text: String) -> Vec<eventsource_stream::Event> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let bytes = axum::body::Bytes::from(text);
        let stream =
            futures_util::stream::iter([Ok::<_, std::convert::Infallible>(bytes)]).eventsource();
        stream.map(|e| e.unwrap()).collect().await
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn last_event_id_parser_accepts_exactly_its_grammar(s in any::<String>()) {
        let parsed = parse_last_event_id(&s);
        let grammar = !s.is_empty() && s.len() <= 16 && s.bytes().all(|b| b.is_ascii_digit())
            && s.parse::<u64>().is_ok_and(|n| n < (1 << 53));
        prop_assert_eq!(parsed.is_some(), grammar);
        if let Some(seq) = parsed {
            prop_assert_eq!(seq.get(), s.parse::<u64>().unwrap());
        }
    }

    #[test]
    fn digit_strings_round_trip(n in 0u64..(1 << 53)) {
        prop_assert_eq!(parse_last_event_id(&n.to_string()), Some(Seq::new(n)));
    }

    #[test]
    fn frames_reparse_as_exactly_one_event(
        name in any::<String>(),
        id in proptest::option::of(0u64..(1 << 53)),
        data in any::<String>(),
        comment in any::<String>(),
    ) {
        let mut text = String::new();
        write_comment(&mut text, &comment);
        match write_event(&mut text, id.map(Seq::new), &name, &data) {
            Err(_) => {
                // Refused before writing: only the comment is there.
                prop_assert!(taskflow::validate_name(&name).is_err());
                prop_assert!(reparse(text).is_empty());
            }
            Ok(()) => {
                let events = reparse(text);
                prop_assert_eq!(events.len(), 1);
                let e = &events[0];
                prop_assert_eq!(&e.event, &name);
                prop_assert_eq!(e.id.clone(), id.map(|i| i.to_string()).unwrap_or_default());
                // SSE turns every line break into "\n".
                let expected = data.replace("\r\n", "\n").replace('\r', "\n");
                prop_assert_eq!(&e.data, &expected);
            }
        }
    }

    #[test]
    fn valid_names_with_json_payloads_round_trip(
        name in "[a-z0-9][A-Za-z0-9_.-]{0,63}",
        value in any::<i64>(),
        text in any::<String>(),
    ) {
        let data = serde_json::json!({ "n": value, "text": text }).to_string();
        let mut out = String::new();
        write_event(&mut out, Some(Seq::new(1)), &name, &data).unwrap();
        let events = reparse(out);
        prop_assert_eq!(events.len(), 1);
        let back: serde_json::Value = serde_json::from_str(&events[0].data).unwrap();
        prop_assert_eq!(back, serde_json::json!({ "n": value, "text": text }));
    }
}

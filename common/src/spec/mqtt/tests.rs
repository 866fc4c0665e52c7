//! The mqtt sink's options: parsing, defaults and every refusal naming its field.

use super::*;

fn cfg(extra: serde_json::Value) -> Result<MqttSinkConfig, String> {
    let mut v = serde_json::json!({"brokers": ["mqtt://127.0.0.1:1883"]});
    if let (Some(m), Some(e)) = (v.as_object_mut(), extra.as_object()) {
        m.extend(e.clone());
    }
    serde_json::from_value(v).map_err(|e| e.to_string())
}

fn field(extra: serde_json::Value) -> String {
    cfg(extra)
        .expect("parses")
        .validate()
        .expect_err("invalid")
        .field
}

#[test]
fn defaults_are_valid() {
    let c = cfg(serde_json::json!({})).expect("parses");
    c.validate().expect("valid");
    assert_eq!(c.keepalive, DEFAULT_KEEPALIVE);
    assert!(c.clean_session);
    assert_eq!(c.topic, DEFAULT_MQTT_TOPIC);
    assert_eq!(c.protocol, MqttProtocol::V311);
    let c =
        cfg(serde_json::json!({"protocol": "5", "keepalive": "30s", "will": {}})).expect("parses");
    assert_eq!(c.protocol, MqttProtocol::V5);
    assert_eq!(
        c.will.as_ref().map(|w| w.topic()),
        Some(DEFAULT_STATUS_TOPIC)
    );
    assert!(cfg(serde_json::json!({"nope": 1})).is_err());
}

#[test]
fn broker_urls_parse() {
    let u = BrokerUrl::parse("b", "mqtts://[::1]").expect("v6");
    assert_eq!((u.tls, u.host.as_str(), u.port), (true, "::1", 8883));
    let u = BrokerUrl::parse("b", "mqtt://h:1884").expect("port");
    assert_eq!((u.tls, u.port), (false, 1884));
    assert_eq!(u.ws_path, None);
    assert_eq!(
        BrokerUrl::parse("b", "mqtt://h/").expect("slash").ws_path,
        None
    );
    for bad in [
        "h:1883",
        "http://h",
        "mqtt://",
        "mqtt://h:0",
        "mqtt://h/x",
        "mqtts://h/mqtt",
        "mqtt://h?x=1",
        "mqtt://u@h",
        "ws://",
        "ws://h:0/mqtt",
        "ws://h/a b",
        "ws://h/mqtt#x",
        "ws://[::1]x/mqtt",
    ] {
        assert!(BrokerUrl::parse("b", bad).is_err(), "{bad}");
    }
}

#[test]
fn websocket_urls_parse() {
    let p = |url| {
        let u = BrokerUrl::parse("b", url).expect(url);
        (u.tls, u.host, u.port, u.ws_path)
    };
    let s = |x: &str| Some(x.to_string());
    assert_eq!(p("ws://h"), (false, "h".into(), 80, s("/mqtt")));
    assert_eq!(p("ws://h/"), (false, "h".into(), 80, s("/mqtt")));
    assert_eq!(p("wss://h"), (true, "h".into(), 443, s("/mqtt")));
    assert_eq!(p("WS://h:8080/mqtt"), (false, "h".into(), 8080, s("/mqtt")));
    assert_eq!(
        p("wss://[::1]:8443/ws/mqtt?x=1"),
        (true, "::1".into(), 8443, s("/ws/mqtt?x=1"))
    );
    assert_eq!(p("ws://h?x=1"), (false, "h".into(), 80, s("/?x=1")));
    assert!(BrokerUrl::parse("b", "wss://h")
        .expect("wss")
        .is_websocket());
    assert!(!BrokerUrl::parse("b", "mqtts://h")
        .expect("mqtts")
        .is_websocket());
    // TLS files go with wss:// as with mqtts://.
    cfg(serde_json::json!({"brokers": ["wss://h/mqtt"], "ca": "/ca.pem"}))
        .expect("parses")
        .validate()
        .expect("valid");
    assert_eq!(
        field(serde_json::json!({"brokers": ["ws://h/mqtt"], "ca": "/ca.pem"})),
        "sink.ca"
    );
}

#[test]
fn errors_name_the_field() {
    assert_eq!(field(serde_json::json!({"brokers": []})), "sink.brokers");
    assert_eq!(
        field(serde_json::json!({"brokers": ["x"]})),
        "sink.brokers[0]"
    );
    assert_eq!(field(serde_json::json!({"qos": 3})), "sink.qos");
    assert_eq!(
        field(serde_json::json!({"client_id": "same"})),
        "sink.client_id"
    );
    assert_eq!(field(serde_json::json!({"topic": "a/+/b"})), "sink.topic");
    assert_eq!(
        field(serde_json::json!({"topic": "a/{nope}"})),
        "sink.topic"
    );
    assert_eq!(field(serde_json::json!({"ca": "/x"})), "sink.ca");
    assert_eq!(
        field(serde_json::json!({"brokers": ["mqtts://h"], "cert": "/c"})),
        "sink.key"
    );
    assert_eq!(
        field(serde_json::json!({"role": "subscriber"})),
        "sink.subscribe"
    );
    assert_eq!(
        field(serde_json::json!({"role": "subscriber", "subscribe": "a/#/b"})),
        "sink.subscribe"
    );
    assert_eq!(
        field(serde_json::json!({"password": "env:1 2", "username": "u"})),
        "sink.password"
    );
    assert_eq!(
        field(serde_json::json!({"password": "file:../rel", "username": "u"})),
        "sink.password"
    );
    assert_eq!(
        field(serde_json::json!({"will": {"qos": 5}})),
        "sink.will.qos"
    );
    assert_eq!(
        field(serde_json::json!({"connect_rate": 0.0})),
        "sink.connect_rate"
    );
    cfg(serde_json::json!({"role": "subscriber", "subscribe": "devices/+/telemetry", "client_id": "sub-{index}"}))
        .expect("parses")
        .validate()
        .expect("valid");
}

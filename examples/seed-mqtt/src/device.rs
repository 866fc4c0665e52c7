//! `mqtt-metrics`: the seed README's `MQTTVirtualDevice`.
//!
//! It keeps the last metrics that arrived on its subscription and reports them as the
//! `data` of its telemetry (the seed's `report_telemetry`):
//!
//! ```json
//! {"device_id":"fleet_1_1","device_type":"MQTT_Sensor","timestamp":1700000000123,"seq":7,
//!  "data":{"temperature":21.5}}
//! ```
//!
//! The subscription itself lives in the sink ([`crate::aggregator`]), which holds the
//! device's MQTT connection: what arrives on `metrics/{clientid}/temperature` reaches
//! [`VirtualDevice::on_message`] through the shard runner, exactly as the seed's
//! `handle_info({:publish, ...})` stored it in the GenServer state.

use std::sync::Arc;

use pluribus_agent::device::{DeviceCtx, DeviceFactory, DeviceType, Tick, VirtualDevice};
use serde::Serialize;

/// The `device_type` field of every report, as in the seed.
pub const SENSOR_TYPE: &str = "MQTT_Sensor";

/// Factory of [`MqttSensor`] devices, registered as `mqtt-metrics`.
#[derive(Debug, Default)]
pub struct MetricsDeviceFactory;

impl DeviceFactory for MetricsDeviceFactory {
    fn build(&self, options: &serde_json::Value) -> Result<Arc<dyn DeviceType>, String> {
        let empty = options.as_object().is_some_and(|o| o.is_empty());
        if !(options.is_null() || empty) {
            return Err(format!(
                "device.options: the mqtt-metrics device takes no options (got {options}): \
                 set the MQTT client id on the sink instead, e.g. \
                 `sink: {{type: mqtt-aggregator, clientid: fleet_1_1}}`"
            ));
        }
        Ok(Arc::new(MetricsDeviceType))
    }
}

/// The `mqtt-metrics` device type (it has no options).
#[derive(Debug)]
pub struct MetricsDeviceType;

impl DeviceType for MetricsDeviceType {
    fn create(&self, _ctx: &DeviceCtx<'_>) -> Box<dyn VirtualDevice> {
        Box::new(MqttSensor::default())
    }
}

/// One device's state: the last metrics received, if any.
#[derive(Debug, Default)]
pub struct MqttSensor {
    metrics: Option<serde_json::Value>,
}

impl MqttSensor {
    /// The last metrics received, if any.
    pub fn metrics(&self) -> Option<&serde_json::Value> {
        self.metrics.as_ref()
    }
}

/// The seed's `report_telemetry` map, plus the runner's `seq`.
#[derive(Serialize)]
struct Report<'a> {
    device_id: &'a str,
    device_type: &'static str,
    timestamp: u64,
    seq: u64,
    data: Option<&'a serde_json::Value>,
}

impl VirtualDevice for MqttSensor {
    fn telemetry(&mut self, ctx: &DeviceCtx<'_>, tick: &Tick, out: &mut Vec<u8>) {
        let report = Report {
            device_id: ctx.device_id,
            device_type: SENSOR_TYPE,
            timestamp: tick.now_ms,
            seq: tick.seq,
            data: self.metrics.as_ref(),
        };
        // Serialising strings, numbers and an already parsed JSON value into a Vec cannot fail.
        let _ = serde_json::to_writer(out, &report);
    }

    /// Stores the metrics; no reply (the seed's device answered nothing either).
    fn on_message(
        &mut self,
        ctx: &DeviceCtx<'_>,
        payload: &[u8],
    ) -> Result<Option<Vec<u8>>, String> {
        let metrics = serde_json::from_slice(payload).map_err(|e| {
            format!(
                "device {}: metrics are not JSON ({e}): publish e.g. {{\"temperature\": 21.5}}",
                ctx.device_id
            )
        })?;
        self.metrics = Some(metrics);
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CTX: DeviceCtx<'static> = DeviceCtx {
        device_id: "fleet_1_1",
        fleet: "fleet_1",
        device_type: "mqtt-metrics",
        index: 0,
        seed: 0,
    };

    fn report(d: &mut dyn VirtualDevice, seq: u64) -> serde_json::Value {
        let mut out = Vec::new();
        let tick = Tick {
            seq,
            scheduled_ms: 1_000,
            now_ms: 1_005,
        };
        d.telemetry(&CTX, &tick, &mut out);
        serde_json::from_slice(&out).expect("telemetry is JSON")
    }

    #[test]
    fn reports_null_until_metrics_arrive_then_the_last_metrics() {
        let ty = MetricsDeviceFactory
            .build(&serde_json::Value::Null)
            .expect("no options");
        let mut d = ty.create(&CTX);
        let r = report(d.as_mut(), 0);
        assert_eq!(
            r,
            serde_json::json!({"device_id": "fleet_1_1", "device_type": "MQTT_Sensor",
                "timestamp": 1_005, "seq": 0, "data": null})
        );
        let reply = d
            .on_message(&CTX, br#"{"temperature": 21.5}"#)
            .expect("JSON metrics are stored");
        assert_eq!(reply, None, "the device answers nothing");
        d.on_message(&CTX, br#"{"temperature": 22.0}"#)
            .expect("stored");
        let r = report(d.as_mut(), 1);
        assert_eq!(r["data"]["temperature"], 22.0);
        assert_eq!(r["seq"], 1);
    }

    #[test]
    fn bad_metrics_are_refused_and_the_last_good_ones_kept() {
        let mut d = MqttSensor::default();
        d.on_message(&CTX, br#"{"temperature": 1}"#)
            .expect("stored");
        let e = d.on_message(&CTX, b"\x83h\x02").expect_err("not JSON");
        assert!(e.contains("fleet_1_1") && e.contains("temperature"), "{e}");
        assert_eq!(d.metrics(), Some(&serde_json::json!({"temperature": 1})));
    }

    #[test]
    fn options_are_refused_with_a_pointer_to_the_sink() {
        assert!(MetricsDeviceFactory.build(&serde_json::json!({})).is_ok());
        let e = MetricsDeviceFactory
            .build(&serde_json::json!({"clientid": "x"}))
            .err()
            .expect("options refused");
        assert!(e.contains("mqtt-aggregator"), "{e}");
    }
}

"""Locust's side of bench/peers.sh: MQTT devices on Locust's own MQTT user (Locust 2.47+).

Each user is one MQTT 3.1.1 connection (paho-mqtt, keepalive 60 s) to 127.0.0.1:$PEERS_PORT.
With PEERS_PUBLISH=1 it publishes a ~170-byte JSON message (the size of a Pluribus generic
device's telemetry) at QoS 0 to peers/locust/<client id> every PEERS_INTERVAL seconds (default 1);
with PEERS_PUBLISH=0
it only holds its connection.

  PEERS_PORT=1883 PEERS_PUBLISH=1 locust -f bench/peers/locustfile.py --headless \
      -u 1000 -r 1000 -t 40s --host 127.0.0.1
"""
import json
import os
import random
import time

from locust import between, constant_pacing, task
from locust.contrib.mqtt import MqttClient, MqttUser

PUBLISH = os.environ.get("PEERS_PUBLISH", "1") == "1"


class Client(MqttClient):
    # One stats entry for every device, as the other generators keep (Locust names an
    # entry after the topic by default: a thousand entries for a thousand devices).
    def _generate_event_name(self, event_type, qos, topic):
        return "%s:%d" % (event_type, qos)


class Device(MqttUser):
    client_cls = Client
    port = int(os.environ.get("PEERS_PORT", "1883"))
    # paho's select() loop silently stops above ~340 users without this.
    use_loop_selectors = True
    wait_time = (
        constant_pacing(float(os.environ.get("PEERS_INTERVAL", "1")))
        if PUBLISH
        else between(3600, 3600)
    )

    def on_start(self):
        self.seq = 0
        self.topic = "peers/locust/%s" % self.client.client_id

    @task
    def telemetry(self):
        if not PUBLISH or not self.client.is_connected():
            return
        now = int(time.time() * 1000)
        msg = {
            "device_id": self.client.client_id,
            "fleet": "locust",
            "device_type": "generic",
            "seq": self.seq,
            "ts": now,
            "scheduled_ts": now,
            "data": {"temperature": round(random.uniform(15, 25), 2), "battery": 99.83},
        }
        self.seq += 1
        self.client.publish(self.topic, json.dumps(msg, separators=(",", ":")), qos=0)

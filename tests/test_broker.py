"""The test infrastructure's real broker: paho-mqtt publishes and receives through Mosquitto."""

import threading

import paho.mqtt.client as mqtt


def test_publish_subscribe_roundtrip(mosquitto):
    got = []
    done = threading.Event()

    def on_message(client, userdata, msg):
        got.append((msg.topic, msg.payload, msg.qos))
        done.set()

    def on_connect(client, userdata, flags, reason_code, properties):
        client.subscribe("hems/test/#", qos=1)

    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    sub.on_message = on_message
    sub.on_connect = on_connect
    sub.connect(mosquitto["host"], mosquitto["port"])
    sub.loop_start()
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    pub.connect(mosquitto["host"], mosquitto["port"])
    pub.loop_start()
    try:
        for _ in range(50):  # the subscription may not be active yet: publish until it is
            pub.publish("hems/test/power_w", b'{"value": 1234}', qos=1).wait_for_publish(2)
            if done.wait(0.1):
                break
        assert got and got[0][0] == "hems/test/power_w"
        assert got[0][1] == b'{"value": 1234}'
        assert got[0][2] == 1
    finally:
        pub.loop_stop()
        sub.loop_stop()
        pub.disconnect()
        sub.disconnect()

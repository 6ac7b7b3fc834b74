"""What carries the twin's events out: signed HTTP webhooks (``webhooks``) and MQTT
(``mqtt``)."""

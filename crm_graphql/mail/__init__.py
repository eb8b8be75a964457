"""The email channel's infrastructure: the outbox dispatcher sending mail to the SMTP
relay, and the inbound entry points (``POST /inbound/email``, the optional SMTP
listener). The rules (threading, routing, delivery states) are in ``services/email.py``."""

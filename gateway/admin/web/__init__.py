"""The admin web page (`aim-gateway web`): partner health, files, findings, licenses, charts.

``app`` builds the Flask app around ``pages`` (one Blueprint, rendering the read model of
``gateway.ledger.reads``; ``charts`` for the charts), ``auth`` guards every request with the
token, ``server`` serves it with waitress on loopback.
"""

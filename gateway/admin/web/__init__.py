"""The admin web page (`aim-gateway web`): partner health, files, findings, licenses, charts.

``app`` builds the Flask pages, ``queries`` and ``charts`` read the ledger, ``auth`` guards
every request with the token, ``server`` serves it with waitress on loopback.
"""

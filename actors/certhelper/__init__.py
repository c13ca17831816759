"""certhelper: the local CA, the HTTPS certificate, and browsers' trust in them.

Always running. Keeps ``cert/`` (layout in ``common/certs.py``): makes the local CA and a
server certificate for 127.0.0.1, ::1 and localhost, renews it ``renew_days`` before it
expires, serves an operator's own ``server.pem`` + ``server_key.pem`` instead when they
are valid, and puts the CA into the Firefox profiles of the configured users (new
profiles within seconds). ``scanbridge trust`` / ``untrust`` do the same for Chromium's
``~/.pki/nssdb`` and the system store.

=======  ====  ====================================================================
op       args  result
=======  ====  ====================================================================
status         {ca, active: {source: local|operator, subject, names, not_after,
               days_left, sha256, ...}, operator: {state: absent|used|rejected,
               reason?}, problem, firefox_trust, profiles: [{path, user, trusted,
               error}]}
refresh        the same, after checking files and profiles at once
=======  ====  ====================================================================

Events: ``cert.changed {source, subject, names, sha256, not_before, not_after,
days_left}`` whenever ``cert/active.pem`` was rewritten.
"""

"""Activities: thin, idempotent side effects, each a method of a class that receives its client.

Critical side effects (grant, revoke, records) are retried until they succeed or fail permanently;
best-effort ones (notifications) have bounded retries and never fail a request. Input and result
models live beside each activity so workflows can import them without importing a vendor client.
"""

"""Working with DEEPaaS modules locally: serve one (`serve`, with an optional CORS proxy in
`cors`) and check that a running server conforms to the DEEPaaS contract (`conformance`
decides, `checker` talks HTTP, `report` prints).

deepaas itself is only ever run as a separate `deepaas-run` process, never imported here.
"""

"""A small client of podman's libpod REST API (v4 paths, HTTP over its Unix socket, JSON), standard library only.

EdgeD and edgestream speak to podman through it instead of podman-py, whose imports (requests, urllib3, idna,
charset_normalizer, certifi, rich, tarfile: some 220 modules) cost every forked edge process about 7 MB
(issue 19). It covers only what the edge asks of podman; a call it lacks is added here, not worked around.
"""

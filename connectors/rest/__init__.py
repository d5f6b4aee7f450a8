"""REST over HTTP: signed XML documents POSTed to a partner's endpoint (`connector`)."""

"""Wire tests: the HTTP layer against mocked and real loopback servers."""

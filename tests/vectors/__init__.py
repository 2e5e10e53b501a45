"""Wire vectors shared by the tests: hex constants, each under the document it comes from."""

"""The playground: a page at `/` for trying the API from a browser, with no build step."""

"""Pure studies behind the chapter's illustrations: no file I/O, no global state."""

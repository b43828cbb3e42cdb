"""GLUE: task table, data readers, metrics and the test-server submission writer."""

"""Network listeners: accept connections and hand requests to the protocol layer."""

"""Protocol adapters: each decodes its wire format, calls the dataplane, encodes the answer."""

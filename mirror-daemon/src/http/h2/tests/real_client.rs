//! Connections written by a real HTTP/2 client (the `h2` crate's) to a real server (h2's), the
//! bytes of both directions captured in the order a relay passes them on, then decoded: the
//! decoder must see exactly the requests the client sent and the server received.

vcl 4.1;
# An edge cache in front of raylive's playback (docs/deployment.md, "An edge cache"):
#   varnishd -a :8080 -f varnish-edge.vcl -s malloc,1g
# Every viewer of a stream asks for the same playlists, parts, segments and init segments, so one
# request per URL reaches raylive. Requests for a part that is about to exist (LL-HLS blocking
# reloads) are coalesced: Varnish holds the identical ones on its waiting list and answers them
# all the moment raylive's one answer arrives. raylive's Cache-Control says what may be kept and
# for how long: a blocking reload's answer 12 s, a plain playlist 1 s, parts and segments for
# good, the multivariant playlist and the MPD not at all (they carry a viewer's session), a
# segment still being written (LL-DASH) not at all and streamed as it comes.

backend raylive {
    .host = "127.0.0.1";
    .port = "8000";
    .first_byte_timeout = 10s;  # a blocking reload is held for up to 3 target durations
}

sub vcl_recv {
    if (req.url !~ "^/live/") {
        return (pass);
    }
    # raylive counts viewers from their media playlist requests: one per viewer per segment (the
    # blocking reload for part 0, or a plain reload from a player without LL-HLS) goes through
    # with its session; every other one is shared.
    if (req.url ~ "/index\.m3u8\?(.*&)?sid=" && (req.url !~ "_HLS_part=" || req.url ~ "_HLS_part=0(&|$)")) {
        return (pass);
    }
    return (hash);
}

sub vcl_hash {
    # The session id is no part of what is served: one cache entry for every viewer.
    hash_data(regsuball(req.url, "sid=[^&]*&?", ""));
    return (lookup);
}

sub vcl_backend_response {
    # A playlist must never be served stale: a newer one is what the player asked for.
    set beresp.grace = 0s;
}

sub vcl_deliver {
    if (obj.hits > 0) {
        set resp.http.X-Cache = "HIT";
    } else {
        set resp.http.X-Cache = "MISS";
    }
}

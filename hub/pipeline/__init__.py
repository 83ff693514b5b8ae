"""intake → message store → dispatch (inline | rq) → normalize → map → link → upsert."""

"""The service's domain rules (ranking filters and reasons, profiles and journey stages, events), free of
HTTP and Redis so they are tested and reused on their own."""

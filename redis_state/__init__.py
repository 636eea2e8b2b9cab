"""How Tailor's state is laid out in Redis, shared by training and the service: the key layout (``keys``),
value codecs of a published model (``codec``) and the published model versions (``versions``)."""

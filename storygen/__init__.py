"""storygen: the generation core. It turns a story request into a story and knows nothing of UIs."""

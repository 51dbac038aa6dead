"""The text triage example (``topologies/text_triage.yaml``): support tickets tokenized,
embedded by the real all-MiniLM-L6-v2 sentence encoder, classified and routed to the
team that handles their category."""

"""Dead letters: reading a deployment's dead-letter topics with their reasons
(:mod:`.letters`) and redriving them to the agents that failed them (:mod:`.redrive`)."""

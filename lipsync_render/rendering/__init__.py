"""The render core: the Renderer, its pipeline of stage threads, and the stages' own modules."""

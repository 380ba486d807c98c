// Placeholder so the target builds; `earshot adapt`'s library lives here.

"""One router per page family; each reads the platform's tables itself."""

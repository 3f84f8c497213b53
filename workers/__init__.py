"""arq worker settings and job functions: thin wrappers that call pushsvc.delivery."""

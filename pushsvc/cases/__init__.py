"""Case progress: applicants are told of every step of their application, in order, once."""

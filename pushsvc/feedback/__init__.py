"""What the public tells a department about a policy: ratings, questions and the department's answers."""

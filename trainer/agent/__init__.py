"""The agent whose prompt is trained: its model, its prompt template, and how its replies are graded."""

"""The APO algorithm: Agent Lightning's APO made durable, its candidate guard, and its LLM client."""

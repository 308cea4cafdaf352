"""Who may call the API: staff users (hub-issued tokens) and partner agencies' API clients."""

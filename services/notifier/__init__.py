"""notifier: emails city focal points about newly announced pilots that match their interests."""

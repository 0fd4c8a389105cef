"""Carbon dashboards: figure builders (pure) and the page templates the service renders."""

"""The self-optimizing campaign: controller, persistent state and resume, shutdown, report."""

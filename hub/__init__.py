"""The consular exchange hub: intake, routing, delivery and evidence for signed XML messages."""

"""The notifier: every scheduled notification sent through the configured channels, retried until delivered and
recorded as it happens (docs/central.md#notifications).

``config`` the ``[notify]`` settings; ``message`` what a notification says; ``channels`` how each channel
formats, signs and sends it; ``replies`` what a receiver's answer means; ``retry`` when to try again; ``plan`` which deliveries an alert needs now; ``links``
the signed acknowledgement link; ``store`` the delivery log's tables; ``worker`` the background thread.
"""

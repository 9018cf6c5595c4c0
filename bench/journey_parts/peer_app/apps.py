from django.apps import AppConfig


class PeerAppConfig(AppConfig):
    name = "journey_parts.peer_app"
    label = "peer_app"

"""Topic components: declare topics like routes, decide who may subscribe and publish.

from topics import Reject, TopicRouter

topics = TopicRouter()

@topics.topic("chat.{channel}")
class Chat:
    def on_subscribe(self, session, channel): ...
"""

from topics.handlers import Reject
from topics.registry import Topic, TopicRouter
from topics.session import Session, SessionInfo

__all__ = ["Reject", "Session", "SessionInfo", "Topic", "TopicRouter"]

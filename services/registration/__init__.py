"""Registration (挂号): patients, their identity, and visits with the payment mode agreed at the door."""

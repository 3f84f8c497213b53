"""The department console (`/console`): pages for staff who draft, review, publish and follow
policies, keep their roster and read their figures. Importing this package registers its pages."""

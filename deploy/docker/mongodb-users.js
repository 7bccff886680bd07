// The services' MongoDB user, created by the official image's entrypoint (as root) on the first
// start of an empty data volume (docker-compose.yml mounts it into /docker-entrypoint-initdb.d).
// It may read and write the application database and nothing else: no other database, no user
// or cluster administration. Its password changes with `db.changeUserPassword` (docs/security.md).
const database = process.env.MONGODB_DATABASE || "cities_survey";
db.getSiblingDB(database).createUser({
  user: process.env.MONGODB_APP_USERNAME,
  pwd: process.env.MONGODB_APP_PASSWORD,
  roles: [{ role: "readWrite", db: database }],
});
